# The demo app of the examples (never uid 1337: its traffic must be captured).
# Built by deploy/build-images.sh.
FROM scratch
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="remora-demo-app" \
      org.opencontainers.image.description="Remora's demo app" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
USER 1000:1000
EXPOSE 9080
ENTRYPOINT ["/usr/local/bin/remora-demo-app"]
