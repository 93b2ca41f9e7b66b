#!/usr/bin/env bash
# Builds Remora's three container images from this checkout, with no registry:
#
#   remora:<version>           the control plane and CLI (uid 1338)
#   remora-proxy:<version>     the sidecar, also its own init container (`init`; uid 1337)
#   remora-demo-app:<version>  the demo app of the examples (uid 1000)
#
# each also tagged `latest`. Every image is `FROM scratch`: a statically linked
# binary (glibc, crt-static) and nothing else, except that the proxy image also
# carries Debian's `nft` with its shared libraries and loader, which
# `remora-proxy init` runs to install the capture rules (see docs/decisions.md).
# No shell, no package manager, no key, certificate or token.
#
#   deploy/build-images.sh                 # cargo profile `image` (what the tests use)
#   deploy/build-images.sh --profile release
#   deploy/build-images.sh --no-build      # images from binaries already built
#
# Needs: cargo, docker (any engine; the classic builder is used, so buildx is
# not needed) and, for the proxy image, the `nftables` package (installed with
# apt-get when missing and we are root). Prints each image's size at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

profile=image
build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

triple=x86_64-unknown-linux-gnu
target_dir=${REMORA_IMAGE_TARGET_DIR:-$root/target/image}
bin_dir=$target_dir/$triple/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi
source_url=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n1)

if [ "$build" = 1 ]; then
    echo "build-images.sh: cargo build --profile $profile --target $triple (static)" >&2
    # A clean environment: run from a test (cargo, nextest), the variables
    # they set would change cargo's fingerprints and rebuild everything.
    clean_env=(env -i "PATH=$PATH" "HOME=$HOME")
    for var in CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN CARGO_NET_OFFLINE; do
        if [ -n "${!var:-}" ]; then clean_env+=("$var=${!var}"); fi
    done
    # The flag goes to the target's units only: build scripts and proc macros
    # stay dynamic, as they must.
    rustflags="-C target-feature=+crt-static"
    # Relative relocations packed (DT_RELR): a static-pie binary keeps ASLR
    # while its relocation table shrinks from about 0.8 MB to 9 KB. It needs
    # binutils >= 2.38 to write them and glibc >= 2.36 to apply them at
    # start-up; a static-pie program linked and run here proves both.
    probe=$(mktemp -d)
    if printf 'static int x; static int *p = &x;\nint main(void) { return p != &x; }\n' >"$probe/relr.c" &&
        cc -static-pie -Wl,-z,pack-relative-relocs -o "$probe/relr" "$probe/relr.c" 2>/dev/null &&
        "$probe/relr"; then
        rustflags="$rustflags -C link-arg=-Wl,-z,pack-relative-relocs"
    else
        echo "build-images.sh: this toolchain cannot pack relocations (binutils < 2.38 or glibc < 2.36): images are about 0.9 MB larger" >&2
    fi
    rm -rf "$probe"
    "${clean_env[@]}" CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$rustflags" \
        cargo build --locked --profile "$profile" --target "$triple" --target-dir "$target_dir" \
        -p remora-control-plane -p remora-proxy -p remora-examples \
        --bin remora --bin remora-proxy --bin remora-demo-app
fi

for bin in remora remora-proxy remora-demo-app; do
    if [ ! -x "$bin_dir/$bin" ]; then
        echo "build-images.sh: $bin_dir/$bin is missing (run without --no-build)" >&2
        exit 1
    fi
    # A dynamic binary would fail in a scratch image with "no such file".
    if ldd "$bin_dir/$bin" >/dev/null 2>&1 && ! ldd "$bin_dir/$bin" 2>&1 | grep -q 'statically linked'; then
        echo "build-images.sh: $bin_dir/$bin is dynamically linked:" >&2
        ldd "$bin_dir/$bin" >&2
        exit 1
    fi
    # It starts (its relocations applied): `--help` parses no config.
    if ! "$bin_dir/$bin" --help >/dev/null; then
        echo "build-images.sh: $bin_dir/$bin does not start" >&2
        exit 1
    fi
done

if ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-images.sh: installing nftables (for the proxy image's nft)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables >&2; }
    else
        echo "build-images.sh: the proxy image needs nft: install the nftables package" >&2
        exit 1
    fi
fi
nft_bin=$(command -v nft || echo /usr/sbin/nft)

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

# A directory tree for one image, owned by root: the binary at /usr/local/bin,
# and /etc/passwd and /etc/group naming its user.
stage() { # name uid
    local dir=$staging/$1
    mkdir -p "$dir/rootfs/etc" "$dir/rootfs/usr/local/bin"
    cp "$bin_dir/$1" "$dir/rootfs/usr/local/bin/$1"
    printf 'root:x:0:0:root:/:/nonexistent\n%s:x:%s:%s::/:/nonexistent\n' "$1" "$2" "$2" >"$dir/rootfs/etc/passwd"
    printf 'root:x:0:\n%s:x:%s:\n' "$1" "$2" >"$dir/rootfs/etc/group"
    cp "$root/deploy/images/$1.Dockerfile" "$dir/Dockerfile"
}

stage remora 1338
# Owned by the control plane's user (the Dockerfile copies `owned/` with
# --chown): its data directory and the directory `remora bootstrap` writes.
mkdir -p "$staging/remora/owned/var/lib/remora" "$staging/remora/owned/var/run/remora/bootstrap"
chmod 0700 "$staging/remora/owned/var/lib/remora"

stage remora-proxy 1337
# Owned by the control plane's user, as in the `remora` image (the
# Dockerfile says why).
mkdir -p "$staging/remora-proxy/owned/var/run/remora/bootstrap"
# nft, every library it loads (resolved: /lib is a symlink on Debian), the
# loader, and the Debian copyright file of each package they come from.
proxy_root=$staging/remora-proxy/rootfs
copy_file() { # path-in-image source
    mkdir -p "$proxy_root$(dirname "$1")"
    cp "$(readlink -f "$2")" "$proxy_root$1"
}
copy_file /usr/sbin/nft "$nft_bin"
packages=$(dpkg -S "$(readlink -f "$nft_bin")" 2>/dev/null | cut -d: -f1 || true)
for lib in $(ldd "$nft_bin" | grep -o '/[^ ]*'); do
    copy_file "$lib" "$lib"
    packages="$packages $(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | cut -d: -f1 || true)"
done
for pkg in $(echo "$packages" | tr ' ' '\n' | sort -u); do
    if [ -f "/usr/share/doc/$pkg/copyright" ]; then
        copy_file "/usr/share/doc/$pkg/copyright" "/usr/share/doc/$pkg/copyright"
    fi
done

stage remora-demo-app 1000

sizes=()
for image in remora remora-proxy remora-demo-app; do
    echo "build-images.sh: docker build $image:$version" >&2
    # The classic builder: it needs no buildx plugin and no registry.
    DOCKER_BUILDKIT=0 docker build --quiet \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "SOURCE=$source_url" \
        -t "$image:$version" -t "$image:latest" \
        "$staging/$image" >/dev/null
    bytes=$(docker image inspect --format '{{.Size}}' "$image:$version")
    sizes+=("$(awk -v i="$image" -v v="$version" -v b="$bytes" 'BEGIN { printf "%-16s %s  %5.1f MB", i, v, b / 1e6 }')")
done
printf '%s\n' "${sizes[@]}"
