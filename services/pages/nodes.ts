// Cluster mode (docs/cluster.md), for the pages: the other nodes a tab knows of for a stage, kept in the tab's
// sessionStorage, and which one to move to when this node stops answering. The list comes with the server's answers
// (join, subscribe) and travels in the address (`nodes=`) when the page moves: another origin has its own storage.

const key = (stageId: string) => `stage-radio:nodes:${stageId}`;

export function rememberNodes(stageId: string, nodes: readonly string[]): void {
  sessionStorage.setItem(key(stageId), JSON.stringify(nodes));
}

/** Takes `nodes=` (space-separated URLs) out of these parameters into the tab's list; true when there was one. */
export function takeCarriedNodes(stageId: string, params: URLSearchParams): boolean {
  const carried = params.get('nodes');
  if (carried === null) return false;
  rememberNodes(stageId, carried.split(' ').filter(Boolean));
  params.delete('nodes');
  return true;
}

/** The next known node on another origin than this page's, and the others (to carry along); null when none. */
export function nextNode(stageId: string): { next: string; rest: string[] } | null {
  let nodes: string[];
  try {
    nodes = (JSON.parse(sessionStorage.getItem(key(stageId)) ?? '[]') as unknown[]).filter((n): n is string => typeof n === 'string');
  } catch {
    return null;
  }
  const next = nodes.find((n) => {
    try {
      return new URL(n).origin !== location.origin;
    } catch {
      return false;
    }
  });
  return next ? { next, rest: nodes.filter((n) => n !== next) } : null;
}

/**
 * This page (path, query, fragment) on the node at `nodeUrl`, marked as coming from this one (`from`); null when the
 * URL is not an http(s) node on another origin.
 */
export function samePageOn(nodeUrl: string): URL | null {
  let target: URL;
  try {
    target = new URL(location.pathname + location.search + location.hash, nodeUrl);
  } catch {
    return null;
  }
  if (!/^https?:$/.test(target.protocol) || target.origin === location.origin) return null;
  target.searchParams.set('from', location.origin);
  return target;
}
