from dnsfilter.cli import main

raise SystemExit(main())
