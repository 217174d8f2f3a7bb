# The image that CI pulls: a Drone plugin and a GitHub Action (action.yml).
#   docker build -t your/convox-build-off-cluster .
#
# Only the base images' names are build arguments, with public defaults;
# `scripts/image` builds this same file where nothing can be pulled, with
# stand-ins for them made from Debian's packages and the host's toolchain.
# The stages are ordered so that a change to the source rebuilds the binary
# only: the packages and the aws CLI come from layers that do not change.
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

# The docker CLI (Debian's docker.io brings dockerd, containerd and runc too;
# only the client is copied out) and the aws CLI v1 in a virtualenv (Debian's
# awscli 2.9 ignores AWS_ENDPOINT_URL; this one honours it).
# Of the aws CLI's service models only ECR's and STS's are kept whole: they
# are all this program calls. The CLI lists services by their model files and
# loads one only for the service called, so each other model becomes `{}`
# (114 MB less; `aws s3` and the like do not work in this image).
FROM ${DEBIAN_IMAGE} AS tools
RUN apt-get update \
 && apt-get install -y --no-install-recommends docker.io python3 python3-venv ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/aws \
 && /opt/aws/bin/pip install --no-cache-dir --disable-pip-version-check awscli==1.46.3 \
 && cd /opt/aws/lib/python3*/site-packages \
 && rm -rf pip setuptools awscli/examples \
 && for data in awscli/botocore/data botocore/data; do \
      [ -d "$data" ] || continue; \
      for version in "$data"/*/*/; do \
        case "$version" in "$data"/ecr/*|"$data"/sts/*) continue ;; esac; \
        find "$version" -type f -delete && echo '{}' > "$version/service-2.json"; \
      done; \
    done \
 && find /opt/aws -name '__pycache__' -prune -exec rm -rf {} +

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

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git python3 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory '*'
COPY --from=tools /usr/bin/docker /usr/local/bin/docker
COPY --from=tools /opt/aws /opt/aws
RUN ln -s /opt/aws/bin/aws /usr/local/bin/aws
COPY --from=build /src/target/release/convox-build-off-cluster /usr/local/bin/convox-build-off-cluster
WORKDIR /drone/src
ENTRYPOINT ["/usr/local/bin/convox-build-off-cluster"]
