# One image per bot, from the repository root:
#   docker build --build-arg BOT=pingbot -t grafolean-pingbot .      (or snmpbot, netflowbot)
#   podman build --format docker --build-arg BOT=pingbot -t grafolean-pingbot .
# (podman's default OCI format has no HEALTHCHECK; `--format docker` keeps it.)
# `deploy/images.sh` builds and checks all three; README "Containers" explains the options.
ARG BASE=debian:bookworm-slim
ARG BUILDER=rust:1-slim-bookworm

FROM ${BUILDER} AS binary
RUN command -v strip >/dev/null && command -v setcap >/dev/null \
 || { apt-get update \
      && apt-get install -y --no-install-recommends binutils libcap2-bin \
      && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY . .
# The three bots in one cargo run, a layer the three images share. A context that already holds
# `prebuilt/<bot>` (deploy/images.sh --binaries) skips cargo; BUILDER is then the base image
# with binutils and libcap2-bin.
# The ping bot's allocator (jemalloc) is built from its C sources, with make.
RUN if [ ! -d prebuilt ]; then \
      { command -v make >/dev/null \
        || { apt-get update && apt-get install -y --no-install-recommends make \
             && rm -rf /var/lib/apt/lists/*; }; } \
      && cargo build --release --locked -p pingbot -p snmpbot -p netflowbot \
      && mkdir prebuilt \
      && cp target/release/pingbot target/release/snmpbot target/release/netflowbot prebuilt/; \
    fi
ARG BOT
# Debug info stays out of the image (symbols stay: backtraces name functions); the ping bot's
# capability is set here, so the binary is one layer of the final image.
RUN case "$BOT" in pingbot|snmpbot|netflowbot) ;; \
      *) echo "--build-arg BOT= must be pingbot, snmpbot or netflowbot (got '$BOT')" >&2; exit 1;; \
    esac \
 && mkdir /out \
 && strip --strip-debug -o "/out/$BOT" "prebuilt/$BOT" \
 && ln -s "$BOT" /out/bot \
 && if [ "$BOT" = pingbot ]; then setcap cap_net_raw+ep /out/pingbot; fi

FROM ${BASE}
RUN useradd --system --uid 10001 --home-dir /var/lib/bot bot \
 && mkdir -p /var/lib/bot && chown bot /var/lib/bot
COPY --from=binary /out/ /usr/local/bin/
USER bot
ENV DATA_DIR=/var/lib/bot METRICS_ADDRESS=0.0.0.0:9100
VOLUME /var/lib/bot
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD ["/usr/local/bin/bot", "--health-check"]
ENTRYPOINT ["/usr/local/bin/bot"]
