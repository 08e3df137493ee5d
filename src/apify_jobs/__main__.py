from apify_jobs.main import main

raise SystemExit(main())
