"""The `pointgcn` command line: one thin module per stage (parse, call the library, print)."""
