import sys

from mailops.dev.devserver import serve

if __name__ == "__main__":
    serve(sys.argv[1])
