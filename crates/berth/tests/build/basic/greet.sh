#!/bin/sh
echo "$GREETING $OTHER $(cat /app/who.txt) $(cat /app/dir/a.txt) $(id -u):$(id -g) $(pwd) $*"
