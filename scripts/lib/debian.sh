# Shared by scripts/build-ephemeral.sh and scripts/build-test-os.sh: Debian packages downloaded
# into a cache, unpacked once per version, and a kernel's module closure copied into an
# initramfs tree. Only `apt-get download` reaches out; nothing else is fetched.
#
# The including script sets `cache` (a directory) and defines `log` and `die` first.

# The versioned linux-image package a kernel metapackage (e.g. linux-image-amd64) depends on;
# runs apt-get update once (as root) when the lists do not know it.
resolve_kernel_package() {
  local meta=$1 pkg
  pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
  if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
    log "apt lists do not know $meta: apt-get update"
    apt-get update -qq >&2
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }' || true)
  fi
  [ -n "$pkg" ] || die "cannot resolve $meta to a kernel package (apt-get update?)"
  echo "$pkg"
}

# Downloads a package into the cache unless that version is there; prints the .deb path.
fetch() {
  local pkg=$1 version arch file
  mkdir -p "$cache/debs"
  version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
  [ -n "$version" ] && [ "$version" != "(none)" ] || die "no candidate version of $pkg"
  arch=$(apt-cache show "$pkg=$version" | awk '/^Architecture:/ { print $2; exit }')
  # apt-get download names files pkg_version_arch.deb with ':' escaped as %3a.
  file="$cache/debs/${pkg}_${version//:/%3a}_${arch}.deb"
  if [ ! -s "$file" ]; then
    log "downloading $pkg $version"
    # As root, apt would drop to the _apt user, which cannot write here: keep root.
    (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >&2)
  fi
  [ -s "$file" ] || die "apt-get download $pkg did not produce $file"
  echo "$file"
}

# Unpacks a .deb into the cache (each version once); prints the directory.
unpack() {
  local deb=$1 dir
  dir="$cache/unpacked/$(basename "$deb" .deb)"
  if [ ! -e "$dir/.done" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg -x "$deb" "$dir"
    touch "$dir/.done"
  fi
  echo "$dir"
}

# Sets vmlinuz, kver and moddir from an unpacked kernel package.
kernel_of() {
  local dir=$1 deb=$2
  vmlinuz=$(ls "$dir"/boot/vmlinuz-* 2>/dev/null | head -n1)
  [ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"
  kver=${vmlinuz##*/vmlinuz-}
  moddir="$dir/lib/modules/$kver"
  [ -d "$moddir/kernel" ] || die "no kernel modules in $moddir"
}

decompress_module() {
  case "$1" in
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -qdc "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
  esac
}

# Copies the modules named in the arguments, with their dependencies first, from $moddir into
# TREE/lib/modules (decompressed) and lists the load order in TREE/etc/modules.order. Debian's
# package has no modules.dep (its postinst runs depmod), so each module's dependencies are read
# from its own .modinfo section, the NUL-separated "depends=a,b" string. Names compare with '-'
# and '_' as equal, as modprobe does. Built-in modules need no loading.
install_modules() {
  local tree=$1 m mn path name
  shift
  declare -gA path_of=() seen=()
  order=()
  while IFS= read -r path; do
    name=${path##*/}
    name=${name%%.ko*}
    path_of[${name//-/_}]=$path
  done < <(cd "$moddir" && find kernel -name '*.ko*')
  local builtin
  builtin=" $(sed -e 's#.*/##' -e 's/\.ko.*//' -e 's/-/_/g' "$moddir/modules.builtin" 2>/dev/null | tr '\n' ' ') "
  for m in "$@"; do
    mn=${m//-/_}
    if [ -n "${path_of[$mn]:-}" ]; then
      visit_module "$mn"
    elif [[ $builtin == *" $mn "* ]]; then
      log "module $m is built into the kernel"
    else
      log "warning: module $m is not in $kver; skipped"
    fi
  done
  mkdir -p "$tree/lib/modules" "$tree/etc"
  : >"$tree/etc/modules.order"
  for m in "${order[@]}"; do
    decompress_module "$moddir/${path_of[$m]}" >"$tree/lib/modules/$m.ko"
    echo "$m" >>"$tree/etc/modules.order"
  done
}

visit_module() {
  local m=${1//-/_} d
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  [ -n "${path_of[$m]:-}" ] || return 0
  for d in $(decompress_module "$moddir/${path_of[$m]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '); do
    visit_module "$d"
  done
  order+=("$m")
}
