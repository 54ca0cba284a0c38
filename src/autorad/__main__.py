from autorad.apps.cli import main

raise SystemExit(main())
