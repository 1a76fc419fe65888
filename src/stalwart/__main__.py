from stalwart.cli import main

main()
