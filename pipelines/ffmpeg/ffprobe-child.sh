#!/bin/sh
# ffprobe under the runner: the same wrapper as ffmpeg-child.sh (which says why), for ffprobe.
exec setpriv --pdeathsig KILL -- setsid -- ffprobe "$@"
