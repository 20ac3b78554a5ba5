from alface.cli import main

raise SystemExit(main())
