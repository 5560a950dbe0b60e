#!/bin/sh
# FFmpeg under the runner (pipelines/ffmpeg/child.ts): it dies with its parent, even when the parent is SIGKILLed
# (setpriv sets PR_SET_PDEATHSIG, which survives the execs), and it runs in a session and process group of its own, so
# a terminal's Ctrl-C or `kill -- -<pgid>` of the service reaches only Node, which stops it in order. setsid does not
# fork here (the child of Node is never a group leader): the PID stays the one Node sees, and so does the death signal.
exec setpriv --pdeathsig KILL -- setsid -- ffmpeg "$@"
