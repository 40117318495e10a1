import sys

from mailops.devserver import serve

if __name__ == "__main__":
    serve(sys.argv[1])
