// managed in the repository (fetchfleet role solr): the `maven` install source's server.
//
// Starts Solr's real HTTP API (SolrDispatchFilter under Jetty, as JettySolrRunner from
// solr-test-framework sets it up) on a fixed port with a Solr home from the command line, and
// keeps it running until the JVM is asked to stop (systemd sends SIGTERM).
//
//   java -cp 'lib/*' org.fetchfleet.solr.SolrServer --home /var/solr/data --port 8983 \
//        --host 0.0.0.0 --context /solr
package org.fetchfleet.solr;

import java.lang.reflect.Field;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.solr.embedded.JettyConfig;
import org.apache.solr.embedded.JettySolrRunner;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class SolrServer {
  private SolrServer() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String home = require(args, "home");
    int port = Integer.parseInt(require(args, "port"));
    String host = args.getOrDefault("host", "127.0.0.1");
    String context = args.getOrDefault("context", "/solr");

    System.setProperty("solr.solr.home", home);
    JettyConfig config =
        JettyConfig.builder().setPort(port).setContext(context).stopAtShutdown(false).build();
    JettySolrRunner runner = new JettySolrRunner(home, new Properties(), config);
    bindTo(runner, host);

    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  try {
                    runner.stop();
                  } catch (Exception e) {
                    e.printStackTrace();
                  }
                },
                "solr-shutdown"));
    runner.start();
    System.out.println(
        "fetchfleet solr: serving " + home + " on http://" + host + ":" + port + context);
    Thread.currentThread().join();
  }

  // JettySolrRunner binds its connector to 127.0.0.1 (it was written for tests) and offers no
  // setter; a server must listen where the firewall lets clients in, so rebind before start().
  private static void bindTo(JettySolrRunner runner, String host) throws Exception {
    Field field = JettySolrRunner.class.getDeclaredField("server");
    field.setAccessible(true);
    Server server = (Server) field.get(runner);
    for (Connector connector : server.getConnectors()) {
      if (connector instanceof ServerConnector) {
        ((ServerConnector) connector).setHost(host);
      }
    }
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
        throw new IllegalArgumentException("usage: --home DIR --port N [--host ADDR] [--context /solr]");
      }
      args.put(argv[i].substring(2), argv[++i]);
    }
    return args;
  }

  private static String require(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null) {
      throw new IllegalArgumentException("missing --" + name);
    }
    return value;
  }
}
