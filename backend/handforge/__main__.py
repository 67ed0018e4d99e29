from handforge.cli import main

raise SystemExit(main())
