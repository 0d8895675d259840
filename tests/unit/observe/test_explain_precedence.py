"""explain says which rule of a list won when an entry and an exception both match."""

from __future__ import annotations

from dnsfilter.config import parse_config
from dnsfilter.datapath.policy import Action
from dnsfilter.lists.adblock import parse_adblock
from dnsfilter.observe.explain import explain

CONFIG = """\
networks:
  loopback: [127.0.0.0/8]
lists:
  ads: {file: ads.txt, format: adblock}
policies:
  default: {networks: [loopback], lists: [ads]}
"""
ADS = "||ads.example^\n@@||ok.ads.example^\n||imp.ok.ads.example^$important\n"


def test_an_important_entry_overrides_the_exception_above_it() -> None:
    config = parse_config(CONFIG, "dnsfilter.yaml", base=None)
    lists = [parse_adblock(ADS, "ads.txt", "ads")]
    found = explain(config, lists, "x.imp.ok.ads.example")
    assert found.verdict.action is Action.BLOCK
    assert found.overrides == (
        "entry imp.ok.ads.example (line 3) of list ads overrides its exception "
        "ok.ads.example (line 2)",
    )
    lifted = explain(config, lists, "y.ok.ads.example")
    assert lifted.verdict.action is Action.ALLOW
    assert lifted.overrides == (
        "exception ok.ads.example (line 2) of list ads overrides its entry ads.example (line 1)",
    )
