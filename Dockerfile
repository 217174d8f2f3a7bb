# The image that CI pulls: a Drone plugin and a GitHub Action (action.yml).
#   docker build -t your/convox-build-off-cluster .
#
# Only the base images' names are build arguments, with public defaults;
# `scripts/image` builds this same file where nothing can be pulled, with
# stand-ins for them made from Debian's packages and the host's toolchain.
# The stages are ordered so that a change to the source rebuilds the binary
# only: the packages come from a layer that does not change.
ARG DEBIAN_IMAGE=debian:trixie-slim
ARG RUST_IMAGE=rust:1-trixie

# The binary: the dependencies first (cached while Cargo.lock stays), then
# the crate.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin convox-build-off-cluster \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin convox-build-off-cluster \
 && strip target/release/convox-build-off-cluster

# Debian trixie's docker CLI (26: API 1.45, which Docker 29 accepts; it
# refuses clients below 1.44) with its buildx plugin (0.13: `--builder`,
# BuildKit's registry cache), and its aws CLI v2 (2.23: it honours
# AWS_ENDPOINT_URL). Only clients: no engine in the image, and no git (the
# program reads the checkout's HEAD itself; git and its perl were 100 MB).
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates docker-cli docker-buildx awscli \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/convox-build-off-cluster /usr/local/bin/convox-build-off-cluster
WORKDIR /drone/src
ENTRYPOINT ["/usr/local/bin/convox-build-off-cluster"]
