# syntax=docker/dockerfile:1.7
# One image per service from one build of the workspace:
#   docker build --build-arg SERVICE=order-service -t minishop/order-service .
# (docker-compose.yml builds all five; the build stage is shared between them.)
#
# Dependency caching: BuildKit cache mounts keep cargo's registry and the
# target directory between builds, so a change to one service recompiles that
# crate, not the ~400 dependencies.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# librdkafka (built from source by rdkafka-sys) needs make; zlib is compiled
# in statically (the `libz-static` feature), so the runtime needs no libz;
# OpenSSL (for the broker login, SASL/SCRAM) is linked from libssl-dev, and
# distroless/cc ships libssl3.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && for s in user product order payment notification; do \
      cp "target/release/$s-service" /out/; \
    done

# Runtime: distroless (glibc, CA certificates, no shell, no package manager),
# running as the unprivileged `nonroot` user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.source="https://github.com/minishop/minishop" \
      org.opencontainers.image.title="minishop ${SERVICE}"
COPY --from=build /out/${SERVICE} /app/service
USER nonroot:nonroot
ENV RUST_LOG=info
# The binary is its own probe (`service healthcheck` GETs its /health): the
# image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/app/service", "healthcheck"]
ENTRYPOINT ["/app/service"]
