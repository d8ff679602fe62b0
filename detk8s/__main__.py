from detk8s.cli import main

main()
