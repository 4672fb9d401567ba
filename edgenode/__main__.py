from edgenode.fastcli import main

main()
