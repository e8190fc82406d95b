from revstats.cli import main

main()
