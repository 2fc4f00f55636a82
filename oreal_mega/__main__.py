from oreal_mega.cli import main

if __name__ == "__main__":
    main()
