# Builds and tests meshmaster on Debian 12 with the same script and commands as the README
# (scripts/test installs the packages: there is no second list here to drift), then ships the
# installed tree in a slim runtime image. The integration tests need no privileges: loopback only.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/test && cmake --install build/release --prefix /opt/meshmaster

FROM debian:12-slim AS runtime
COPY scripts/install-deps /tmp/install-deps
RUN /tmp/install-deps --runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps
COPY --from=build /opt/meshmaster /opt/meshmaster
ENV PATH=/opt/meshmaster/bin:$PATH
ENTRYPOINT ["meshmaster"]
