"""``python -m taskmesh`` runs the command line."""

from taskmesh.cli import main

main()
