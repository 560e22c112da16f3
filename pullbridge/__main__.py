from pullbridge.cli import main

raise SystemExit(main())
