//! The POSIX shell scripts runbox runs inside containers. They need only
//! `sh` and common tools (`env`, `mkdir`, `rm`, `mv`, `readlink -f`,
//! `kill`, `cat`), as busybox or coreutils provide.
//!
//! Each exec runs as the session leader of its own session (runc calls
//! `setsid` for every exec). The wrapper records its pid (= the session id)
//! in `STATE_DIR/TAG.pid`; the killer kills every process of that session,
//! found by scanning `/proc/*/stat`, until none is left.

// Per-exec state files live in /run/runbox inside the container (never in
// /workspace, which belongs to the caller).

/// The exec wrapper. Arguments: TAG NOFILE FSIZE_BLOCKS CPU_SECS LOOKUP_PATH
/// NPAIRS, then NPAIRS `K=V` pairs, then argv. `-` means "no limit".
///
/// It records its session, applies the rlimits, checks that the program can
/// be found and executed (recording why not in `TAG.fail`), then runs it
/// with `exec env -i` and the given environment only: the command replaces
/// the wrapper (keeping its pid, the session id), so no shell waits for it
/// and none adds its notes on a killed child ("Killed", "Segmentation
/// fault") to the command's stderr. The `TAG.pid` file stays behind in the
/// container's `/run/runbox`, which goes with the container.
pub(crate) const WRAPPER: &str = r#"d=/run/runbox; t=$1; nofile=$2; fsize=$3; cpu=$4; lp=$5; np=$6; shift 6
mkdir -p "$d" 2>/dev/null
echo $$ > "$d/$t.pid" 2>/dev/null
if [ -e "$d/$t.kill" ]; then rm -f "$d/$t.kill" "$d/$t.pid"; exit 137; fi
fail() { printf '%s\n' "$1" > "$d/$t.fail" 2>/dev/null; [ "$1" = other ] && printf 'runbox: %s\n' "$2" >&2; rm -f "$d/$t.pid"; exit "$3"; }
if [ "$nofile" != - ]; then ulimit -n "$nofile" || fail other "cannot set the open files limit" 126; fi
if [ "$fsize" != - ]; then ulimit -f "$fsize" || fail other "cannot set the file size limit" 126; fi
if [ "$cpu" != - ]; then ulimit -t "$cpu" || fail other "cannot set the cpu time limit" 126; fi
eval "prog=\${$((np + 1))}"
f=
case $prog in
  */*) f=$prog ;;
  *) oifs=$IFS; IFS=:; set -f
     for dir in $lp; do
       [ -n "$dir" ] || dir=.
       if [ -f "$dir/$prog" ]; then f=$dir/$prog; [ -x "$f" ] && break; fi
     done
     IFS=$oifs; set +f ;;
esac
if [ -z "$f" ] || [ ! -e "$f" ]; then fail notfound "$prog: not found" 127; fi
if [ -d "$f" ] || [ ! -x "$f" ]; then fail denied "$prog: permission denied" 126; fi
exec env -i "$@""#;

/// Kills the session recorded for TAG (argument 1), and marks TAG killed so
/// a wrapper that has not started yet exits at once. Prints `runbox-killed`.
pub(crate) const KILL_SESSION: &str = r#"d=/run/runbox; t=$1
mkdir -p "$d" 2>/dev/null; : > "$d/$t.kill"
sid=$(cat "$d/$t.pid" 2>/dev/null)
if [ -n "$sid" ]; then
  i=0
  while [ $i -lt 100 ]; do
    found=
    for s in /proc/[0-9]*/stat; do
      read -r l < "$s" 2>/dev/null || continue
      r=${l##*) }
      set -- $r
      [ "$1" = Z ] && continue
      if [ "$4" = "$sid" ]; then p=${s#/proc/}; p=${p%/stat}; kill -9 "$p" 2>/dev/null && found=1; fi
    done
    [ -z "$found" ] && break
    i=$((i + 1))
  done
  rm -f "$d/$t.pid"
fi
echo runbox-killed"#;

/// Kills every process except the container's own (init and the keep-alive
/// loop share session 1) and this killer's session. Prints `runbox-killed`.
pub(crate) const KILL_ALL: &str = r#"me=$$
i=0
while [ $i -lt 100 ]; do
  found=
  for s in /proc/[0-9]*/stat; do
    read -r l < "$s" 2>/dev/null || continue
    r=${l##*) }
    set -- $r
    [ "$1" = Z ] && continue
    if [ "$4" != 1 ] && [ "$4" != 0 ] && [ "$4" != "$me" ]; then p=${s#/proc/}; p=${p%/stat}; kill -9 "$p" 2>/dev/null && found=1; fi
  done
  [ -z "$found" ] && break
  i=$((i + 1))
done
rm -f /run/runbox/*.pid 2>/dev/null
echo runbox-killed"#;

/// Resolves a (lexically checked) sandbox path inside the container.
/// Arguments: MODE (`from`, `to`, `dir`) and the relative path. Walks it
/// component by component; a symlink whose fully resolved target is not
/// under `/workspace` (or cannot be resolved) exits 3. `from` and `dir`
/// need the path to exist (as a directory for `dir`), else exit 4; `to`
/// creates the parent directory. Prints the resolved absolute path.
pub(crate) const RESOLVE: &str = r#"set -f
ws=$(readlink -f /workspace) || { echo "cannot resolve /workspace"; exit 5; }
mode=$1; p=$2; cur=$ws
IFS=/
for c in $p; do
  [ -n "$c" ] || continue
  cur=$cur/$c
  if [ -L "$cur" ]; then
    t=$(readlink -f "$cur") || { echo "symlink ${cur#"$ws"/} cannot be resolved inside the sandbox"; exit 3; }
    case $t in
      "$ws"|"$ws"/*) cur=$t ;;
      *) echo "symlink ${cur#"$ws"/} leads outside the sandbox (to $t)"; exit 3 ;;
    esac
  fi
done
unset IFS
case $mode in
  from) [ -e "$cur" ] || { echo "no such file or directory"; exit 4; } ;;
  dir) [ -d "$cur" ] || { echo "no such directory"; exit 4; } ;;
  to) [ "$cur" != "$ws" ] || { echo "cannot replace the workspace root"; exit 6; }
      mkdir -p "${cur%/*}" || exit 7 ;;
esac
printf '%s' "$cur""#;

/// Moves an uploaded staging entry (argument 1) over the destination
/// (argument 2), replacing it. With argument 3 = `abort`, removes the
/// staging entry only.
pub(crate) const FINISH_UPLOAD: &str = r#"if [ "$3" = abort ]; then rm -rf -- "$1"; exit 0; fi
rm -rf -- "$2" && mv -f -- "$1" "$2""#;

/// Prints the memory cgroup's OOM kill counter (v1 or v2).
pub(crate) const OOM_COUNT: &str = r#"for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
  if [ -r "$f" ]; then
    while read -r k v; do [ "$k" = oom_kill ] && { echo "$v"; exit 0; }; done < "$f"
  fi
done
echo none"#;

/// Prints and removes TAG's start-failure record (argument 1).
pub(crate) const READ_FAIL: &str =
    r#"f=/run/runbox/$1.fail; if [ -e "$f" ]; then cat "$f"; rm -f "$f"; fi"#;
