# The image: a Drone plugin, and the static binary for `COPY --from`.
#
#   bash scripts/release dist
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE -f Dockerfile dist
#
# Its build context is what `scripts/release` made (dist/): the static
# binary for the image's CPU is taken from its archive. No compiler and no
# Rust stage. The release workflow publishes it as ghcr.io/OWNER/REPO
# (X.Y.Z, X.Y, X); `scripts/image` builds it here from the same output.
# Only the base image's name is a build argument, with a public default.
ARG DEBIAN_IMAGE=debian:trixie-slim

# The binary of the image's own CPU (dpkg's architecture: amd64, arm64),
# unpacked in a stage of its own so the image holds only that one.
FROM ${DEBIAN_IMAGE} AS bin
COPY convox-build-off-cluster-*-unknown-linux-musl.tar.gz /dist/
RUN arch=$(dpkg --print-architecture) \
 && case "$arch" in amd64) t=x86_64 ;; arm64) t=aarch64 ;; *) echo "no release binary for $arch" >&2; exit 1 ;; esac \
 && test -f "/dist/convox-build-off-cluster-$t-unknown-linux-musl.tar.gz" \
 && tar -xzf "/dist/convox-build-off-cluster-$t-unknown-linux-musl.tar.gz" -C /usr/local/bin convox-build-off-cluster

# Debian trixie's docker CLI (26: API 1.45, which Docker 29 accepts; it
# refuses clients below 1.44) with its buildx plugin (0.13: `--builder`,
# BuildKit's registry cache), and its aws CLI v2 (2.23: it honours
# AWS_ENDPOINT_URL). Only clients: no engine in the image, and no git (the
# program reads the checkout's HEAD itself; git and its perl were 100 MB).
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates docker-cli docker-buildx awscli \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=bin /usr/local/bin/convox-build-off-cluster /usr/local/bin/convox-build-off-cluster
WORKDIR /drone/src
ENTRYPOINT ["/usr/local/bin/convox-build-off-cluster"]
