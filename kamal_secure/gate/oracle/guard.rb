# kamal-secure guard: preloaded into the real kamal with RUBYOPT=-r<this file>.
#
# It asks kamal-secure (over an inherited socket, JSON lines) for a verdict on what
# Kamal itself resolved, (a) before the body of the leaf Thor command runs and (b)
# before every SSH connection to a host not yet approved. Any doubt stops Kamal with
# exit 3. It is inert in every process but the exact one kamal-secure exec'd (the
# pid is bound), so Kamal's hooks and whatever they start never activate it.
# See docs/kamal-oracle.md for the Kamal internals this relies on.

module KamalSecureGuard
  ENV_KEY = "KAMAL_SECURE_GUARD"
  SUPPORTED_MAJOR = 2
  EXIT_GUARD = 3

  @mutex = Mutex.new
  @approved = {} # host signature => true
  @command = nil # the verdict on the leaf command, once asked
  @installed = {}
  @tracepoint = nil

  class << self
    attr_reader :installed

    def boot(spec)
      mode, pid, fd = spec.to_s.split(":", 3)
      case mode
      when "probe"
        probe(fd)
      when "v1"
        return unless pid.to_s == Process.pid.to_s # inert in every other process

        cleanup_env
        activate(Integer(fd, 10))
      end
    rescue SystemExit
      raise
    rescue Exception => e # rubocop:disable Lint/RescueException
      fail_closed("#{e.class}: #{e.message}")
    end

    def probe(fd)
      require "json"
      io = IO.for_fd(Integer(fd, 10), "w", autoclose: true)
      io.write(JSON.generate("probe" => true, "pid" => Process.pid, "ruby" => RUBY_VERSION) + "\n")
      io.close
      exit!(0)
    end

    def cleanup_env
      ENV.delete(ENV_KEY)
      opt = ENV["RUBYOPT"].to_s.split(" ").reject { |o| o == "-r#{__FILE__}" }.join(" ")
      opt.empty? ? ENV.delete("RUBYOPT") : ENV["RUBYOPT"] = opt
    end

    def activate(fd)
      require "json"
      require "etc"
      @io = IO.for_fd(fd, "r+", autoclose: true)
      @io.close_on_exec = true # Kamal's hooks never inherit the channel
      @io.sync = true
      reply = ask("type" => "hello", "pid" => Process.pid, "ruby" => RUBY_VERSION)
      fail_closed("kamal-secure refused the guard's hello") unless reply["ok"] == true
      watch
    end

    # Wait for Kamal's own classes: prepend our checks as each one finishes loading.
    def watch
      @tracepoint = TracePoint.new(:end) do |tp|
        begin
          install(tp.self)
        rescue SystemExit
          raise
        rescue Exception => e # rubocop:disable Lint/RescueException
          fail_closed("#{e.class}: #{e.message}")
        end
      end
      @tracepoint.enable
    end

    TARGETS = {
      "Thor::Command" => [:instance, :run, "CommandHook"],
      "SSHKit::Coordinator" => [:instance, :initialize, "CoordinatorHook"],
      "Net::SSH" => [:singleton, :start, "NetSshHook"],
      "Kamal::Commander" => [:instance, :configure, "ConfigureHook"],
    }.freeze

    def install(mod)
      name = Module.instance_method(:name).bind(mod).call
      if !@installed["Thor::Command"] && name.to_s.start_with?("Kamal::Cli::") &&
         mod.is_a?(Class) && defined?(::Thor) && mod < ::Thor
        # Kamal's Thor commands are loading but Thor's dispatch point was never hooked
        fail_closed("Thor::Command#run was not found or changed shape; cannot intercept " \
                    "Kamal's commands")
      end
      target = TARGETS[name]
      return unless target && !@installed[name]

      kind, meth, hook = target
      owner = kind == :singleton ? mod.singleton_class : mod
      defined = owner.method_defined?(meth) || owner.private_method_defined?(meth)
      return unless defined

      owner.prepend(const_get(hook))
      @installed[name] = true
      @tracepoint.disable if @installed.size == TARGETS.size
    end

    def kamal_label
      defined?(::Kamal::VERSION) ? "Kamal #{::Kamal::VERSION}" : "Kamal (version not loaded)"
    end

    def fail_closed(message)
      $stderr.write("kamal-secure: guard: #{message} (#{kamal_label}); kamal stopped " \
                    "before touching anything (fail closed, exit 3)\n")
      $stderr.flush
      exit!(EXIT_GUARD)
    end

    def refuse(reply)
      code = reply["code"]
      code = EXIT_GUARD unless code.is_a?(Integer) && code.between?(1, 125)
      $stderr.write("kamal-secure: #{reply['message']}\n") if reply["message"].is_a?(String)
      $stderr.flush
      $stdout.flush
      exit!(code)
    end

    def ask(payload)
      @mutex.synchronize do
        begin
          @io.write(JSON.generate(payload) + "\n")
          line = @io.gets
        rescue IOError, SystemCallError => e
          fail_closed("kamal-secure is unreachable (#{e.class})")
        end
        fail_closed("kamal-secure gave no verdict (its verdict process ended)") if line.nil?
        begin
          data = JSON.parse(line)
        rescue JSON::ParserError
          fail_closed("malformed verdict from kamal-secure")
        end
        fail_closed("malformed verdict from kamal-secure") unless data.is_a?(Hash)
        data
      end
    end

    def guarded
      yield
    rescue SystemExit
      raise
    rescue Exception => e # rubocop:disable Lint/RescueException
      fail_closed("#{e.class}: #{e.message}")
    end

    # ---- (a) the leaf Thor command, before its body -------------------------------------

    def leaf?(command, instance)
      return false unless defined?(::Kamal::Cli::Base) && instance.is_a?(::Kamal::Cli::Base)
      return false if defined?(::Kamal::Cli::Alias::Command) && command.is_a?(::Kamal::Cli::Alias::Command)

      subs = instance.class.respond_to?(:subcommands) ? instance.class.subcommands : []
      !subs.include?(command.name.to_s)
    end

    def before_command(command, instance)
      leaf = guarded { @command.nil? && leaf?(command, instance) }
      return unless leaf

      # Kamal's own config errors (ERB, YAML, validation) stay Kamal's: nothing has run yet
      ::KAMAL.config if defined?(::KAMAL) && ::KAMAL.respond_to?(:config)
      guarded { require_internals }
      guarded do
        group = instance.class.name.to_s
        command_verdict(group, command.name.to_s, instance.options.to_h)
      end
    end

    def require_internals
      fail_closed("Kamal is not loaded") unless defined?(::Kamal::VERSION) && defined?(::KAMAL)
      major = ::Kamal::VERSION.to_s.split(".").first
      unless major == SUPPORTED_MAJOR.to_s
        fail_closed("unknown Kamal version #{::Kamal::VERSION} (the guard knows Kamal #{SUPPORTED_MAJOR}.x)")
      end
      TARGETS.each_key do |name|
        fail_closed("#{name} was not found or changed shape; cannot intercept it") unless @installed[name]
      end
      {
        ::KAMAL => [:config, :hosts],
        ::Net::SSH => [:configuration_for],
        ::SSHKit::Backend::Netssh => [:config],
      }.each do |obj, methods|
        methods.each do |m|
          fail_closed("#{obj}.#{m} is missing") unless obj.respond_to?(m)
        end
      end
      [:hostname, :username, :netssh_options, :ssh_options, :local?].each do |m|
        fail_closed("SSHKit::Host##{m} is missing") unless ::SSHKit::Host.method_defined?(m)
      end
      config = ::KAMAL.config
      [:raw_config, :destination].each do |m|
        fail_closed("Kamal::Configuration##{m} is missing") unless config.respond_to?(m)
      end
    end

    def command_verdict(group, name, options)
      config = ::KAMAL.config
      hosts = Array(::KAMAL.hosts).map { |h| from_sshkit(::SSHKit::Host.new(h.to_s)) }
      reply = ask(
        "type" => "command",
        "kamal" => ::Kamal::VERSION.to_s,
        "group" => group,
        "name" => name,
        "argv" => ARGV.map(&:to_s),
        "options" => plain(options),
        "config_file" => config_file_of,
        "destination" => config.destination,
        "raw_config" => plain(config.raw_config.to_h, true),
        "hosts" => hosts
      )
      refuse(reply) unless reply["allow"] == true
      @command = reply
      reply["env"].each { |k, v| ENV[k.to_s] = v.to_s } if reply["env"].is_a?(Hash)
      approve(hosts, reply)
    end

    def configured(kwargs)
      guarded { @config_file = kwargs[:config_file]&.to_s }
    end

    def config_file_of
      fail_closed("Kamal was never configured with a config file") if @config_file.nil?
      @config_file
    end

    def approve(hosts, reply)
      checked = Array(reply["approved"])
      hosts.each { |h| @approved[signature(h)] = true if checked.include?(h["host"]) }
    end

    # ---- (b) every connection ----------------------------------------------------------

    def before_hosts(sshkit_hosts)
      guarded do
        records = sshkit_hosts.reject(&:local?).map { |h| from_sshkit(h) }
        connect_verdict(records)
      end
    end

    def before_start(host, user, options)
      guarded do
        record = effective(host.to_s, user, options || {})
        connect_verdict([record])
      end
    end

    def connect_verdict(records)
      ensure_command
      return if @command["readonly"] == true

      fresh = records.reject { |r| @approved[signature(r)] }.uniq { |r| signature(r) }
      return if fresh.empty?

      reply = ask("type" => "connect", "hosts" => fresh)
      refuse(reply) unless reply["allow"] == true
      approve(fresh, reply)
      missing = fresh.reject { |r| @approved[signature(r)] }
      fail_closed("kamal-secure did not approve #{missing.map { |r| r['host'] }.join(',')}") if missing.any?
    end

    def ensure_command
      return unless @command.nil?

      require_internals
      command_verdict("", "", {})
    end

    def from_sshkit(host)
      global = ::SSHKit::Backend::Netssh.config.ssh_options || {}
      copy = host.dup
      copy.ssh_options = global.merge(host.ssh_options || {})
      effective(String(copy.hostname), copy.username, copy.netssh_options)
    end

    # What Net::SSH.start will use: the ssh_config files (Host blocks, Include) as defaults,
    # Kamal's explicit options on top.
    def effective(hostname, user, options)
      opts = options.dup
      opts[:user] = user if user
      base = ::Net::SSH.configuration_for(hostname, opts.fetch(:config, true))
      eff = base.merge(opts)
      jump, command = proxy_of(eff[:proxy])
      {
        "host" => hostname,
        "hostname" => eff.fetch(:host_name, hostname).to_s,
        "port" => (eff[:port] || 22).to_i,
        "user" => (eff[:user] || Etc.getpwuid.name).to_s,
        "keys" => Array(eff[:keys]).map(&:to_s),
        "keys_only" => eff[:keys_only] == true,
        "key_data" => Array(eff[:key_data]).size,
        "forward_agent" => eff[:forward_agent] == true,
        "proxy" => jump,
        "proxy_command" => command
      }
    end

    def proxy_of(proxy)
      return [nil, nil] if proxy.nil? || proxy == false
      if defined?(::Net::SSH::Proxy::Jump) && proxy.is_a?(::Net::SSH::Proxy::Jump)
        return [proxy.instance_variable_get(:@jump_proxies).to_s, nil]
      end
      if defined?(::Net::SSH::Proxy::Command) && proxy.is_a?(::Net::SSH::Proxy::Command)
        return [nil, proxy.command_line_template.to_s]
      end

      fail_closed("unknown ssh proxy #{proxy.class}")
    end

    def signature(record)
      record.values_at("hostname", "port", "user", "keys", "keys_only", "key_data", "proxy",
                       "proxy_command", "host")
    end

    # JSON of what Kamal holds: top-level keys are Kamal's (symbolized); a nested symbol key is
    # not the same as a string key to Kamal, so it keeps a leading colon.
    def plain(value, top = false)
      case value
      when Hash
        value.each_with_object({}) do |(k, v), out|
          key = k.is_a?(Symbol) && !top ? ":#{k}" : k.to_s
          out[key] = plain(v)
        end
      when Array then value.map { |v| plain(v) }
      when String, Integer, Float, true, false, nil then value
      else value.to_s
      end
    end
  end

  module CommandHook
    def run(instance, args = [])
      KamalSecureGuard.before_command(self, instance)
      super
    end
  end

  module CoordinatorHook
    def initialize(*args, **kwargs, &block)
      super
      KamalSecureGuard.before_hosts(Array(hosts))
    end
  end

  module ConfigureHook
    def configure(**kwargs)
      KamalSecureGuard.configured(kwargs)
      super
    end
  end

  module NetSshHook
    def start(host, user = nil, options = {}, &block)
      KamalSecureGuard.before_start(host, user, options)
      super
    end
  end
end

KamalSecureGuard.boot(ENV[KamalSecureGuard::ENV_KEY]) if ENV[KamalSecureGuard::ENV_KEY]
