"""The consumers' own schemas, for checking what the emitters print (see data/schemas/SOURCES.md).

libvirt: ``domain.rng`` of libvirt 9.0.0 and 11.3.0 through lxml's RelaxNG (a snippet is wrapped in a
minimal ``<domain>`` first, as ``domain.rng`` starts there). KubeVirt: the CRDs' ``openAPIV3Schema``
(Draft 7) and the v1.9.0 swagger definitions (Draft 4, through a ``$ref`` wrapper). Harvester: its CRDs, with
``nullable: true`` mapped to an extra ``null`` type. None of these rejects unknown keys, so ``unknown_keys``
walks an object along a schema and lists every key the schema does not define.
"""

from __future__ import annotations

import copy
import functools
import json
import lzma
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent.parent / "data" / "schemas"
LIBVIRT_VERSIONS = ("9.0.0", "11.3.0")

_DOMAIN = (
    "<domain type='kvm'><name>pcipass-test</name><memory unit='MiB'>512</memory>"
    "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices/></domain>"
)


@functools.cache
def _relaxng(version: str):
    from lxml import etree

    return etree.RelaxNG(etree.parse(str(SCHEMAS / f"libvirt-{version}" / "domain.rng")))


def wrap_in_domain(fragment: str):
    """A minimal domain whose <devices> holds the hostdev(s) of ``fragment`` (a <hostdev> or <devices>)."""
    from lxml import etree

    dom = etree.fromstring(_DOMAIN)
    devices = dom.find("devices")
    frag = etree.fromstring(fragment)
    for el in list(frag) if frag.tag == "devices" else [frag]:
        devices.append(el)
    return dom


def libvirt_errors(document, version: str) -> str:
    """'' when ``document`` (an lxml domain element) is valid for that libvirt version, else the error log."""
    schema = _relaxng(version)
    return "" if schema.validate(document) else str(schema.error_log)


def _read(name: str) -> str:
    path = SCHEMAS / name
    data = path.read_bytes()
    return (lzma.decompress(data) if path.suffix == ".xz" else data).decode()


def _nullable(schema: Any) -> Any:
    """OpenAPI's ``nullable: true`` as JSON Schema: the type also admits null."""
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items()}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_nullable(v) for v in schema]
    return schema


@functools.cache
def _crds(name: str) -> dict[str, dict[str, Any]]:
    import yaml

    out = {}
    for doc in yaml.safe_load_all(_read(name)):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            version = next(v for v in doc["spec"]["versions"] if v["name"] in ("v1", "v1beta1"))
            out[doc["spec"]["names"]["kind"]] = _nullable(version["schema"]["openAPIV3Schema"])
    return out


KUBEVIRT_CRD = "kubevirt/crd-kubevirts.kubevirt.io-v1.9.0.yaml.xz"
#: KubeVirt v0.58's VM CRD (from Harvester's tests): hostDevices[]/gpus[] require name AND deviceName.
VM_CRD_V058 = "kubevirt/crd-virtualmachines.kubevirt.io-v0.58.yaml.xz"
#: KubeVirt v1.6's VMI CRD (from Harvester's tests): hostDevices[]/gpus[] require only name.
VMI_CRD_V16 = "kubevirt/crd-virtualmachineinstances.kubevirt.io-v1.6.yaml.xz"
HARVESTER_CRDS = "harvester/crds-v1beta1.yaml"


def crd_schema(name: str, kind: str) -> dict[str, Any]:
    return copy.deepcopy(_crds(name)[kind])


def crd_errors(obj: Any, name: str, kind: str) -> list[str]:
    from jsonschema import Draft7Validator

    validator = Draft7Validator(_crds(name)[kind])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


@functools.cache
def swagger_definitions() -> dict[str, Any]:
    return json.loads(_read("kubevirt/swagger-v1.9.0.json.xz"))["definitions"]


def swagger_errors(obj: Any, definition: str) -> list[str]:
    from jsonschema import Draft4Validator

    validator = Draft4Validator({"definitions": swagger_definitions(), "$ref": f"#/definitions/{definition}"})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def unknown_keys(
    obj: Any, schema: dict[str, Any], definitions: dict[str, Any] | None = None, path: str = ""
) -> list[str]:
    """Paths of keys in ``obj`` that ``schema`` (and the definitions its ``$ref``s name) does not define.

    An object schema without ``properties`` is free-form (a map, or CRD metadata) and is only followed
    through ``additionalProperties`` when that is a schema.
    """
    while "$ref" in schema:
        schema = (definitions or {})[schema["$ref"].rsplit("/", 1)[-1]]
    out: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for k, v in obj.items():
                    out += unknown_keys(v, extra, definitions, f"{path}.{k}")
            return out
        for k, v in obj.items():
            if k not in props:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, props[k], definitions, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += unknown_keys(v, schema.get("items", {}), definitions, f"{path}[{i}]")
    return out


def swagger_unknown_keys(obj: Any, definition: str) -> list[str]:
    defs = swagger_definitions()
    return unknown_keys(obj, defs[definition], defs)
