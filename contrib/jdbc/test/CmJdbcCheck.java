/*
 * CmJdbcCheck.java
 *	  The test program of regress/t/083_jdbc.t (and an example): connects
 *	  through java.sql.DriverManager, so it works with whichever driver the
 *	  URL selects.
 *
 *	  java -cp conmgr-jdbc.jar:postgresql.jar:. CmJdbcCheck connect URL...
 *	  java ... CmJdbcCheck block URL SQL
 *
 *	  Output lines, one per URL for "connect":
 *	    url=U port=P recovery=t|f cm=yes|no instance=I lb=...
 *	    url=U error sqlstate=S message=M
 *	  and for "block":
 *	    connected port=P cm=yes|no
 *	    running
 *	    result sqlstate=S elapsed=SECONDS closed=true|false lost=REASON message=M
 */
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

import org.conmgr.jdbc.ConmgrConnection;

public final class CmJdbcCheck
{
	private static String flat(String s)
	{
		return s == null ? "" : s.replaceAll("\\s+", " ");
	}

	/* "port=P recovery=t|f cm=yes|no instance=I" of a connection. */
	private static String where(Connection c) throws SQLException
	{
		try (Statement st = c.createStatement();
			 ResultSet rs = st.executeQuery("SELECT inet_server_port(), pg_is_in_recovery()"))
		{
			rs.next();
			String cm = "no instance=none";

			if (c.isWrapperFor(ConmgrConnection.class))
			{
				ConmgrConnection cc = c.unwrap(ConmgrConnection.class);

				cm = "yes instance=" + cc.getInstanceId() + " host=" + cc.getInstanceHost()
					+ " cmport=" + cc.getConmgrPort()
					+ (cc.getInstancePort() == rs.getInt(1) ? "" : " MISMATCH=" + cc.getInstancePort());
			}
			return "port=" + rs.getInt(1) + " recovery=" + (rs.getBoolean(2) ? "t" : "f") + " cm=" + cm;
		}
	}

	public static void main(String[] args) throws Exception
	{
		if (args.length >= 2 && args[0].equals("connect"))
		{
			for (int i = 1; i < args.length; i++)
			{
				try (Connection c = DriverManager.getConnection(args[i]))
				{
					System.out.println("url=" + args[i] + " " + where(c));
				}
				catch (SQLException e)
				{
					System.out.println("url=" + args[i] + " error sqlstate=" + e.getSQLState()
									   + " message=" + flat(e.getMessage()));
				}
			}
		}
		else if (args.length == 3 && args[0].equals("block"))
		{
			Connection c = DriverManager.getConnection(args[1]);

			System.out.println("connected " + where(c));
			System.out.println("running");
			long t0 = System.nanoTime();
			String state = "none", msg = "";

			try (Statement st = c.createStatement())
			{
				st.execute(args[2]);
			}
			catch (SQLException e)
			{
				state = e.getSQLState();
				msg = flat(e.getMessage());
			}
			ConmgrConnection cc = c.unwrap(ConmgrConnection.class);

			System.out.printf("result sqlstate=%s elapsed=%.3f closed=%s lost=%s message=%s%n",
							  state, (System.nanoTime() - t0) / 1e9, c.isClosed(),
							  flat(cc.getLossReason()).replace(' ', '_'), msg);
			c.close();
		}
		else
		{
			System.err.println("usage: CmJdbcCheck connect URL... | CmJdbcCheck block URL SQL");
			System.exit(2);
		}
	}
}
