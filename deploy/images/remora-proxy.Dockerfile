# The sidecar, and its own init container (`remora-proxy init`, which runs the
# nft carried here, as root with NET_ADMIN). Built by deploy/build-images.sh.
FROM scratch
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="remora-proxy" \
      org.opencontainers.image.description="Remora's sidecar proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY rootfs/ /
# The bootstrap directory as in the `remora` image, owned by the control
# plane's user, which writes the token there (`remora bootstrap`): Docker
# fills an empty named volume from the image of the first container created
# with it, and Compose v2 creates a pod's sidecar and its account's
# bootstrap service at the same time, so either may be first.
COPY --chown=1338:1338 owned/ /
# The capture rules leave this uid's traffic alone.
USER 1337:1337
EXPOSE 15001 15006 15021 15090
ENTRYPOINT ["/usr/local/bin/remora-proxy"]
