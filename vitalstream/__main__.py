from vitalstream.cli import main

raise SystemExit(main())
