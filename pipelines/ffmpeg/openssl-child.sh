#!/bin/sh
# openssl under the runner (the service's self-signed certificate): the same wrapper as ffmpeg-child.sh (which says why).
exec setpriv --pdeathsig KILL -- setsid -- openssl "$@"
