from autorad.cli import main

raise SystemExit(main())
