#!/usr/bin/env bash
# Installs the real programs the tests drive. Filled in by the testkit work.
set -euo pipefail
