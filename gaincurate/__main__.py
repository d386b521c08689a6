from gaincurate.cli import main

main()
