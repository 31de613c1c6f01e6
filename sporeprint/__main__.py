from sporeprint.cli import main

main()
