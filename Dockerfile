# syntax=docker/dockerfile:1
# livevote in a container: built by the same command as `make release` in a Debian Rust image,
# run from a small Debian image as a non-root user, the journal on a volume.
#
#   docker build -t livevote .
#   docker run -d --name livevote -p 8080:8080 -v livevote-data:/var/lib/livevote livevote
#
# Arguments after the image name replace the default flags (CMD below), e.g.
#   docker run ... livevote --addr 0.0.0.0:8080 --host vote.example.com --log-format json
# Stop it with `docker stop -t 20` (a graceful shutdown takes up to --shutdown-delay +
# --shutdown-timeout, 12 s by default; docker's default is 10 s before SIGKILL).
# Checked in `make test` (scripts/check-packaging.sh): every file copied here exists, and the
# build command is the Makefile's `release` recipe. No image registry is reachable there, so
# the image itself is not built in tests.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Only what the build reads (see .dockerignore): the manifest and lock file, the build script,
# the sources, and the pages, scripts and styles the build script embeds in the binary.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY www ./www
# The Makefile's `release` recipe (`make release`), exactly.
RUN cargo build --release

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# A system user of its own (no login, no password), and the state directory it owns.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/livevote \
        --no-create-home --shell /usr/sbin/nologin livevote \
    && install -d -o livevote -g livevote -m 0700 /var/lib/livevote
COPY --from=build /src/target/release/livevote /usr/local/bin/livevote
# The journal is $STATE_DIRECTORY/votes.journal (as under systemd's StateDirectory=): on the
# volume, so acknowledged votes outlive the container.
ENV STATE_DIRECTORY=/var/lib/livevote
VOLUME ["/var/lib/livevote"]
WORKDIR /var/lib/livevote
USER livevote:livevote
EXPOSE 8080
# `livevote probe` asks /healthz on 127.0.0.1:8080 and exits 0 on 200: no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["livevote", "probe"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["livevote"]
# Every interface of the container, so that the published port reaches it. Clients come by
# names the container cannot know (the host's name, a proxy's), so every well-formed Host is
# answered (--host '*'); to refuse other names (421), pass --host NAME for each instead.
CMD ["--addr", "0.0.0.0:8080", "--host", "*"]
