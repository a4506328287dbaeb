"""A recording stand-in ``kamal``, and the CLI run in front of it."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from testing.cli import run_cli

STANDIN_SOURCE = '''\
import json, os, sys
if os.environ.get("KAMAL_SECURE_GUARD", "").startswith("probe:"):
    sys.exit(0)  # kamal-secure probing whether it can guard us: a Python stand-in cannot
record = os.environ.get("KAMAL_STANDIN_RECORD")
data = {
    "argv": [a.hex() for a in map(os.fsencode, sys.argv[1:])],
    "env": {k: v for k, v in os.environ.items()},
    "cwd": os.getcwd(),
    "stdin": sys.stdin.read() if os.environ.get("KAMAL_STANDIN_READ") else "",
}
if record:
    with open(record, "w") as f:
        json.dump(data, f)
sys.stdout.write("stand-in:" + data["stdin"])
sys.exit(int(os.environ.get("KAMAL_STANDIN_EXIT", "0")))
'''


def write_standin(directory: Path) -> Path:
    """A stand-in ``kamal`` that records argv (as bytes), environment and cwd."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kamal"
    path.write_text(f"#!{sys.executable}\n{STANDIN_SOURCE}")
    path.chmod(0o755)
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    record: dict[str, object] | None

    @property
    def argv(self) -> list[bytes]:
        assert self.record is not None, f"kamal was not started: {self.stderr}"
        argv = self.record["argv"]
        assert isinstance(argv, list)
        return [bytes.fromhex(a) for a in argv]


def run_ks(
    args: list[str] | list[bytes],
    cwd: Path,
    path_dirs: list[Path],
    record: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Run:
    """``run_cli`` with only ``path_dirs`` (and the system's) on PATH, offline, recording
    what the stand-in kamal was started with."""
    if record.exists():
        record.unlink()
    done = run_cli(args, cwd, {
        "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]),
        "KAMAL_STANDIN_RECORD": str(record),
        # these tests are about the wrapper; the live host checks have their own suite
        "KAMAL_SECURE_OFFLINE": "1",
        **(env or {}),
    }, stdin=stdin, timeout=60)
    data = json.loads(record.read_text()) if record.exists() else None
    return Run(done.code, done.stdout, done.stderr, data)


# A Ruby stand-in kamal (the oracle guard is loaded into it like into the real one)
FAKE_RUBY_KAMAL = r'''#!/usr/bin/env ruby
require "yaml"
mode = ENV.fetch("FAKE_MODE", "")
class Thor
  class Command < Struct.new(:name)
    define_method(ENV["FAKE_MODE"] == "no_thor_run" ? :call : :run) do |instance, args = []|
      instance.__send__(name, *args)
    end
  end
end
unless mode == "no_sshkit"
  module SSHKit
    class Host
      attr_accessor :hostname, :user, :port, :ssh_options
      def initialize(name)
        raise "boom inside Kamal's SSHKit" if ENV["FAKE_MODE"] == "host_raises"
        @hostname = name
      end
      def username = user
      def local? = false
      def netssh_options = { user: "deploy", port: 22, keys: [] }.merge(ssh_options || {})
    end
    class Coordinator
      attr_accessor :hosts
      def initialize(raw) = @hosts = raw
    end
    module Backend
      class Netssh
        Config = Struct.new(:ssh_options)
        def self.config = Config.new({})
      end
    end
  end
  module Net
    module SSH
      def self.configuration_for(_host, _use) = {}
      def self.start(*) = nil
    end
  end
end
module Kamal
  VERSION = ENV.fetch("FAKE_VERSION", "2.12.0")
  Config = Struct.new(:raw_config, :destination)
  class Commander
    def configure(**kwargs) = @file = kwargs[:config_file]
    def config = Config.new(YAML.load_file(@file).transform_keys(&:to_sym), nil)
    def hosts = ENV["FAKE_MODE"] == "host_raises" ? ["127.0.0.1"] : []
  end
  module Cli
    class BootError < StandardError; end  # as in Kamal: loaded before Thor's command classes
    class Base < Thor
      def options = {}
    end
    class Main < Base
      def self.subcommands = []
      def deploy
        File.write(ENV.fetch("FAKE_MARKER"), "ran")
        # what a Kamal hook would inherit
        File.write(ENV.fetch("FAKE_MARKER") + ".env",
                   "#{ENV.key?("KAMAL_SECURE_GUARD")} #{ENV["RUBYOPT"].inspect}")
      end
    end
  end
end
KAMAL = Kamal::Commander.new
KAMAL.configure(config_file: File.expand_path("config/deploy.yml"))
if (go = ENV["FAKE_WAIT_FOR"])
  File.write(ENV.fetch("FAKE_READY"), Process.pid.to_s)
  sleep 0.05 until File.exist?(go)
end
if mode == "malformed"
  fake = Object.new
  def fake.write(_) = nil
  def fake.gets = "{not json\n"
  KamalSecureGuard.instance_variable_set(:@io, fake)
end
Thor::Command.new("deploy").public_send(mode == "no_thor_run" ? :call : :run, Kamal::Cli::Main.new)
'''


# The bin/kamal that `bundle binstubs kamal` writes in a Rails app
BUNDLER_BINSTUB = '''#!/usr/bin/env ruby
# frozen_string_literal: true

#
# This file was generated by Bundler.
#
# The application 'kamal' is installed as part of a gem, and
# this file is here to facilitate running it.
#

ENV["BUNDLE_GEMFILE"] ||= File.expand_path("../Gemfile", __dir__)

bundle_binstub = File.expand_path("bundle", __dir__)

if File.file?(bundle_binstub)
  if File.read(bundle_binstub, 300).include?("This file was generated by Bundler")
    load(bundle_binstub)
  else
    abort("Your `bin/bundle` was not generated by Bundler, so this binstub cannot run.
Replace `bin/bundle` by running `bundle binstubs bundler --force`, then run this command again.")
  end
end

require "rubygems"
require "bundler/setup"

load Gem.bin_path("kamal", "kamal")
'''
