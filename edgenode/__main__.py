from edgenode.cli import main

main()
