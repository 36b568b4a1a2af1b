/**
 * The MovieLens datasets ncf-native knows how to fetch: where GroupLens publishes them, their
 * published MD5, and how their ratings file is laid out.
 */
export interface DelimitedFormat {
  delimiter: string;
  header: boolean;
  userCol: number;
  itemCol: number;
  timeCol: number; // -1: none
}

export interface MovieLensSource {
  name: 'ml-20m' | 'ml-1m';
  zipName: string;
  md5: string;
  /** Path of the ratings file inside the zip (and inside an unpacked folder). */
  ratingsEntry: string;
  format: DelimitedFormat;
}

export const MOVIELENS_BASE_URL = 'https://files.grouplens.org/datasets/movielens/';

export const MOVIELENS: Record<MovieLensSource['name'], MovieLensSource> = {
  'ml-20m': {
    name: 'ml-20m',
    zipName: 'ml-20m.zip',
    md5: 'cd245b17a1ae2cc31bb14903e1204af3',
    ratingsEntry: 'ml-20m/ratings.csv',
    format: { delimiter: ',', header: true, userCol: 0, itemCol: 1, timeCol: 3 },
  },
  'ml-1m': {
    name: 'ml-1m',
    zipName: 'ml-1m.zip',
    md5: 'c4d9eecfca2ab87c1945afe126590906',
    ratingsEntry: 'ml-1m/ratings.dat',
    format: { delimiter: '::', header: false, userCol: 0, itemCol: 1, timeCol: 3 },
  },
};

export function isMovieLensName(s: string): s is MovieLensSource['name'] {
  return s === 'ml-20m' || s === 'ml-1m';
}

/** The download base URL: the `mirror` option, else $NCF_NATIVE_MIRROR, else GroupLens. */
export function movieLensUrl(src: MovieLensSource, mirror?: string): string {
  const base = mirror ?? process.env.NCF_NATIVE_MIRROR ?? MOVIELENS_BASE_URL;
  return base.replace(/\/*$/, '/') + src.zipName;
}
