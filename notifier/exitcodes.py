"""Exit codes, after sysexits.h, so service managers can tell failures apart."""

OK = 0
FAILURE = 1  # the operation failed: a pass crashed, an id was unknown, verify said no
USAGE = 2  # bad arguments (argparse uses 2 as well)
DATAERR = 65  # bad input data (import)
NOINPUT = 66  # an input file is unreadable
UNAVAILABLE = 69  # the database (or the HTTP port) is unavailable
TEMPFAIL = 75  # the pass ran, but some deliveries failed and will be retried
CONFIG = 78  # the configuration is invalid: systemd's RestartPreventExitStatus=78
