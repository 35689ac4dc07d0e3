"""The training image: tagged by a content hash of Dockerfile + lock, built only when it changed.

`prefect.yaml` calls `build_image` and `push_image` as its build and push steps; they wrap
prefect-docker's steps and skip the work when the tagged image already exists. GitLab CI computes
the same tag in shell: `cat Dockerfile uv.lock | sha256sum | cut -c1-16`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.core.settings import Settings

HASHED_FILES = ("Dockerfile", "uv.lock")


def content_tag(root: Path = Path("."), files: tuple[str, ...] = HASHED_FILES) -> str:
    """16 hex digits of SHA-256 over the files' bytes, in order (what `cat … | sha256sum` sees)."""
    digest = hashlib.sha256()
    for name in files:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the image tag hashes {', '.join(files)}")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_settings() -> tuple[str, str]:
    """Image name (MLOPS_IMAGE_NAME, e.g. $CI_REGISTRY_IMAGE/train) and build mode (MLOPS_IMAGE_BUILD)."""
    settings = Settings.from_env()
    return settings.image_name, settings.image_build


def _exists(image: str) -> str | None:
    """'registry' or 'local' when the tagged image is already there, 'no-engine' when no Docker
    engine answers here, else None."""
    import docker

    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return "no-engine"
    try:
        try:
            client.images.get_registry_data(image)
            return "registry"
        except docker.errors.APIError:
            pass
        try:
            client.images.get(image)
            return "local"
        except docker.errors.ImageNotFound:
            return None
    finally:
        client.close()


def build_image(dockerfile: str = "Dockerfile", base_image: str | None = None,
                exists: Callable[[str], str | None] = _exists,
                build: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """prefect.yaml build step: the image `name:content-hash`, built unless it already exists.

    MLOPS_IMAGE_BUILD=skip only computes the tag (process pools on shell runners run the checkout,
    not an image); `always` rebuilds; `auto` without a Docker engine says so in one line and
    skips (process and gitlab-ci pools need no image built here).
    """
    name, mode = image_settings()
    tag = content_tag(Path(dockerfile).parent)
    image = f"{name}:{tag}"
    found = None if mode == "always" else ("skipped" if mode == "skip" else exists(image))
    if found == "no-engine":
        print(f"image {image}: build skipped (no Docker engine here; process and gitlab-ci pools "
              "need none, docker pools need the image built where Docker runs)")
        return {"image_name": name, "tag": tag, "image": image, "built": False,
                "found": found}
    if found:
        why = "not built (MLOPS_IMAGE_BUILD=skip)" if found == "skipped" else f"up to date ({found})"
        print(f"image {image}: {why}")
        return {"image_name": name, "tag": tag, "image": image, "built": False,
                "found": found}
    if build is None:
        from prefect_docker.deployments.steps import build_docker_image

        build = build_docker_image
    print(f"image {image}: building from {dockerfile}")
    kwargs = {"buildargs": {"BASE_IMAGE": base_image}} if base_image else {}
    out = build(image_name=name, dockerfile=dockerfile, tag=tag, **kwargs)
    return {"image_name": out["image_name"], "tag": tag, "image": out["image"], "built": True,
            "found": "built"}


def push_image(image_name: str, tag: str, found: str,
               push: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """prefect.yaml push step: push what was built or exists only locally; skip the rest."""
    image = f"{image_name}:{tag}"
    if found == "no-engine":  # the build step said it already
        return {"image": image, "pushed": False}
    if found in ("registry", "skipped"):
        why = "already in the registry" if found == "registry" else "build skipped"
        print(f"image {image}: not pushed ({why})")
        return {"image": image, "pushed": False}
    if push is None:
        from prefect_docker.deployments.steps import push_docker_image

        push = push_docker_image
    push(image_name=image_name, tag=tag)
    return {"image": image, "pushed": True}


if __name__ == "__main__":
    print(content_tag())
