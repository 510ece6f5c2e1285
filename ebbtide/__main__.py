from ebbtide.cli import main

raise SystemExit(main())
