# syntax=docker/dockerfile:1.7
# One image per service from one build of the workspace:
#   docker build --build-arg SERVICE=order-service -t minishop/order-service .
#   docker build --build-arg SERVICE=web -t minishop/web .
# The build stages take no SERVICE, so the six images (the five services
# and web) share them: compose
# and the GitHub workflow build the workspace once and copy one binary into
# each image.
#
# Dependency layer (cargo-chef): `planner` reduces the workspace to a recipe
# of its manifests and lock file, `build` compiles every dependency from the
# recipe alone (about 430 crates, the long part), and only then copies the
# sources. A change to the code reuses the dependency layer, from the local
# layer cache or from a registry/GitHub cache (`cache-from`); only a change
# to Cargo.toml or Cargo.lock rebuilds it.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
# librdkafka (built from source by rdkafka-sys) needs make; zlib is compiled
# in statically (the `libz-static` feature), so the runtime needs no libz;
# OpenSSL (for the broker login, SASL/SCRAM) is linked from libssl-dev, and
# distroless/cc ships libssl3. The versions are bookworm's, which the base
# image's tag pins; pinning each package's patch release would break the
# build at the next Debian security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install --locked cargo-chef --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && for s in user product order payment notification; do \
      cp "target/release/$s-service" /out/; \
    done \
 && cp target/release/web /out/web

# Runtime: distroless (glibc, CA certificates, no shell, no package manager),
# running as its unprivileged `nonroot` user (uid and gid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.source="https://github.com/minishop/minishop" \
      org.opencontainers.image.title="minishop ${SERVICE}"
COPY --from=build /out/${SERVICE} /app/service
USER 65532:65532
ENV RUST_LOG=info
# The binary is its own probe (`service healthcheck` GETs its /health): the
# image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/app/service", "healthcheck"]
ENTRYPOINT ["/app/service"]
