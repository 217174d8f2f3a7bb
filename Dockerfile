# The Drone plugin image: this binary, the docker CLI and the aws CLI.
#   docker build -t your/convox-build-off-cluster .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin convox-build-off-cluster

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends docker.io awscli git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/convox-build-off-cluster /usr/local/bin/convox-build-off-cluster
WORKDIR /drone/src
ENTRYPOINT ["/usr/local/bin/convox-build-off-cluster"]
