# Builds and tests meshmaster on Debian 12 with the same script and commands as the README
# (scripts/test installs the packages: there is no second list here to drift), then ships the
# daemon and the example bot and gateway, stripped, in a slim runtime image that runs them as an
# unprivileged user. The integration tests need no privileges: loopback only.
#
# The HEALTHCHECK asks the HTTP API's /healthz (no token), so the configuration the image runs with
# needs an [http] table listening on port 9180 (deploy/compose/meshmaster.toml has one).
FROM debian:12 AS build
WORKDIR /src
COPY . .
# The install is stripped (--strip); of it the runtime takes only the program (the headers,
# libraries and CMake/pkg-config files are for building against meshmaster, not for running it).
# The example bot and gateway are not installed (they are the demo's testbed): copied and stripped.
RUN scripts/test \
 && cmake --install build/release --prefix /opt/meshmaster --strip \
 && install -D --strip -m 0755 build/release/examples/bot/bot /opt/meshmaster-examples/bot \
 && install -D --strip -m 0755 build/release/examples/gateway/gateway /opt/meshmaster-examples/gateway

FROM debian:12-slim AS runtime
# The shared libraries the binaries link (`scripts/install-deps --print-runtime`); every other
# library is linked statically. tests/install/test_docker_runtime.py checks this list against `ldd`.
COPY scripts/install-deps /tmp/install-deps
RUN /tmp/install-deps --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps
# A fixed UID/GID, so that a volume's files keep one owner across images and hosts.
RUN groupadd --system --gid 10001 meshmaster \
 && useradd --system --uid 10001 --gid meshmaster --home-dir /var/lib/meshmaster --no-create-home \
            --shell /usr/sbin/nologin meshmaster \
 && install -d -o meshmaster -g meshmaster -m 0750 /var/lib/meshmaster
COPY --from=build /opt/meshmaster/bin/meshmaster /opt/meshmaster/bin/meshmaster
COPY --from=build /opt/meshmaster-examples/bot /opt/meshmaster-examples/gateway /opt/meshmaster/examples/
ENV PATH=/opt/meshmaster/bin:$PATH
USER meshmaster:meshmaster
# The event log, checkpoints and control socket (deploy/compose/meshmaster.toml puts them here):
# the master's memory across its own restarts, so a volume.
WORKDIR /var/lib/meshmaster
VOLUME /var/lib/meshmaster
# Slaves on other hosts connect here (listen = "0.0.0.0:7400"); the ones spawned inside use loopback.
# The HTTP API ([http] listen = "0.0.0.0:9180"): docs/http.md.
EXPOSE 7400
EXPOSE 9180
# Healthy while the daemon serves HTTP (curl is in the runtime list of scripts/install-deps).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "--fail", "--silent", "--show-error", "--max-time", "2", "--output", "/dev/null", "http://127.0.0.1:9180/healthz"]
ENTRYPOINT ["meshmaster"]
CMD ["run", "-c", "/etc/meshmaster/meshmaster.toml"]
