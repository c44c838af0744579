from snap_bench.cli import main

raise SystemExit(main())
