#!/bin/sh
# FFmpeg that dies with its parent: if the service is killed (even SIGKILL), no FFmpeg is left writing into its
# folders or holding its ports. setpriv (util-linux) sets PR_SET_PDEATHSIG, which survives the exec into ffmpeg.
exec setpriv --pdeathsig KILL -- "${FFMPEG_BIN:-ffmpeg}" "$@"
