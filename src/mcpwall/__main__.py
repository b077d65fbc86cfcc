from mcpwall.cli.main import main

main()
