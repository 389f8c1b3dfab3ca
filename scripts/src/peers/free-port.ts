/** A free TCP port on 127.0.0.1, for peers that cannot report their own: the tgtd harness's. */
export { freePort } from '@esxemu/iscsi/tgtd';
